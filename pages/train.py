"""train (being written)."""

import streamlit as st

from pages import ui

ui.ensure_entrypoint()
st.title("train")
