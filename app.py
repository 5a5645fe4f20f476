"""detviz: see how an anchor-based single-shot detector works. Run with `make run`."""

import streamlit as st

from pages import ui
from pages.ui.live_builds import start_default_build

st.set_page_config(page_title="detviz", page_icon=":material/center_focus_strong:", layout="wide")

navigation = st.navigation(
    {
        "Data": [
            st.Page("pages/overview.py", title="Overview", icon=":material/insights:", default=True),
            st.Page("pages/browse.py", title="Browse", icon=":material/photo_library:", url_path="browse"),
        ],
        "How SSD works": [
            st.Page("pages/lesson.py", title="Lesson walkthrough", icon=":material/school:", url_path="lesson"),
            st.Page("pages/anchors.py", title="Anchors", icon=":material/grid_on:", url_path="anchors"),
            st.Page("pages/matching.py", title="Matching", icon=":material/join_inner:", url_path="matching"),
            st.Page("pages/losses.py", title="Losses", icon=":material/functions:", url_path="losses"),
        ],
        "Tune and train": [
            st.Page(
                "pages/predictions.py", title="Predictions & NMS", icon=":material/target:", url_path="predictions"
            ),
            st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:", url_path="evaluate"),
            st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
        ],
    }
)
notice = st.empty()
requested = ui.requested_params()
ui.dataset_sidebar(navigation.url_path)  # the scoring pages prefer the val split
ui.run_page(navigation)
ui.report_dropped_params(requested, notice)
start_default_build()  # the first run of the process: the default live set, in the background
