"""Caches of the UI layer for what detviz computes but must not remember itself.

`image_uri` is the encoder the pages hand to the image figure builders (`encode=image_uri`):
every slider move redraws the same picture, and the JPEG + base64 encoding would otherwise
run again each time.
"""

from __future__ import annotations

import weakref

import streamlit as st
from PIL import Image

from detviz.figures import image_data_uri

MAX_IMAGE_URIS = 64  # encoded images remembered; more images than a few pages show at once


@st.cache_resource(show_spinner=False)
def _image_uris() -> dict[int, tuple[weakref.ref, str]]:
    """The process's memo of encoded images, by image object id (with a weak reference that
    says whether the id still names the same image)."""
    return {}


def image_uri(image: Image.Image) -> str:
    """`image_data_uri(image)`, remembered per image object while it lives.

    Keyed on the object, not its pixels: the pages' images come from `st.cache_resource`
    loaders, so the same picture is the same object on every rerun, and hashing its pixels
    would cost about as much as encoding them.
    """
    memo = _image_uris()
    hit = memo.get(id(image))
    if hit is not None and hit[0]() is image:
        return hit[1]
    uri = image_data_uri(image)
    if len(memo) >= MAX_IMAGE_URIS:
        memo.clear()
    memo[id(image)] = (weakref.ref(image), uri)
    return uri
