"""detviz: see how an anchor-based single-shot detector works. Run with `make run`."""

import streamlit as st

from pages import ui

st.set_page_config(page_title="detviz", page_icon=":material/center_focus_strong:", layout="wide")

navigation = st.navigation(
    [
        st.Page(
            "pages/overview.py",
            title="Overview",
            icon=":material/insights:",
            default=True,
        ),
        st.Page(
            "pages/browse.py",
            title="Browse",
            icon=":material/photo_library:",
            url_path="browse",
        ),
    ]
)
ui.dataset_sidebar()
navigation.run()
