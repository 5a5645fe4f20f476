"""A practitioner's own VOC-format folder: own class names, no classes.txt, no ImageSets/Main.

The split "all", the inferred class list (and its one warning), stratified train/val split files
(library, command line, the sidebar's button), and classes.txt still rejecting unknown names.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, make_voc, run_app, texts, voc_xml
from PIL import Image

from detviz.data import VOC_CLASSES, DataError, read_voc
from detviz.data.split import main as split_main
from detviz.data.split import make_splits, stratified_split
from pages.ui import keys


def own_folder(root: Path, objects: dict[str, list[str]]) -> Path:
    """A VOC folder with Annotations/ and JPEGImages/ only: image id -> its objects' class names."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for image_id, names in objects.items():
        boxes = [dict(name=n, xmin=2 + 3 * k, ymin=2, xmax=20 + 3 * k, ymax=30) for k, n in enumerate(names)]
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(f"{image_id}.jpg", 64, 48, boxes))
        Image.new("RGB", (64, 48), (90, 120, 150)).save(root / "JPEGImages" / f"{image_id}.jpg")
    return root


# 10 images hold a gizmo (4 of them a widget too), 20 only widgets, one a sprocket and a widget.
OBJECTS = {
    **{f"g{i:02d}": ["gizmo", "widget"] if i < 4 else ["gizmo"] for i in range(10)},
    **{f"w{i:02d}": ["widget"] * (1 + i % 3) for i in range(20)},
    "s00": ["widget", "sprocket"],
}


@pytest.fixture
def own(tmp_path: Path) -> Path:
    return own_folder(tmp_path / "mine", OBJECTS)


def _class_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if "classes.txt" in str(w.message)]


def test_all_split_infers_the_class_list_and_says_so_once(own: Path) -> None:
    """Mutations killed: the names rejected (the old behaviour), the inferred list unsorted or
    keeping repeats, labels not following it, no warning or one per file/object, the note lost
    on the second (cached) read."""
    for _ in range(2):  # the second read comes from the index cache
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            index = read_voc(own, "all")
        assert _class_warnings(record) == [index.class_note]
        assert "gizmo, sprocket, widget" in index.class_note and str(own) in index.class_note
        assert index.classes == ["gizmo", "sprocket", "widget"]
        assert index.image_ids == sorted(OBJECTS)
        for record_ in index:
            assert [index.classes[i] for i in record_.labels] == OBJECTS[record_.image_id]


def test_voc_names_and_no_classes_txt_keep_the_voc_list_silently(tmp_path: Path) -> None:
    """Mutation killed: the class list always inferred (VOC folders would lose VOC_CLASSES order)."""
    root = own_folder(tmp_path / "v", {"a": ["dog", "cat"], "b": ["person"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index = read_voc(root, "all")
    assert index.classes == list(VOC_CLASSES) and index.class_note == ""
    assert index.labels.tolist() == [VOC_CLASSES.index(n) for n in ("dog", "cat", "person")]


def test_all_holds_every_annotation_even_with_split_files(tmp_path: Path) -> None:
    """Mutation killed: "all" read as ImageSets/Main/all.txt, or as the existing split only."""
    xml = voc_xml("x.jpg", 64, 48, [dict(name="dog", xmin=1, ymin=1, xmax=9, ymax=9)])
    root = make_voc(tmp_path / "v", {"b": xml, "a": xml, "c": xml}, split="train")
    (root / "ImageSets" / "Main" / "train.txt").write_text("c\n")
    assert read_voc(root, "train").image_ids == ["c"]
    assert read_voc(root, "all").image_ids == ["a", "b", "c"]


def test_classes_txt_still_rejects_an_unknown_name_naming_the_files(own: Path) -> None:
    """Mutation killed: classes.txt ignored (the names inferred although the user listed them)."""
    (own / "classes.txt").write_text("gizmo\nwidget\n")
    with pytest.raises(DataError, match=r"s00\.xml: object 2 \(sprocket\) has class 'sprocket', which is not in "
                                        r".*mine/classes\.txt"):  # fmt: skip
        read_voc(own, "all")


def test_stratified_split_puts_each_class_in_val_in_proportion() -> None:
    """Mutation killed: an unstratified shuffle (five classes of ten images each landing exactly
    2 in val for five seeds is about 1e-8 likely by chance), a val size other than round(n * f)."""
    images = {f"{c}{i}": [c] for c in "abcde" for i in range(10)}
    for seed in range(5):
        split = stratified_split(images, 0.2, seed)
        assert len(split["val"]) == 10 and len(split["train"]) == 40
        assert Counter(i[0] for i in split["val"]) == dict.fromkeys("abcde", 2)
        assert sorted(split["train"] + split["val"]) == sorted(images)


def test_stratified_split_keeps_both_sides_non_empty_and_empty_images_legal() -> None:
    """Mutations killed: k rounded to 0 (an empty val) or to n (an empty train); images without
    objects dropped."""
    assert [len(v) for v in stratified_split({"a": [], "b": ["x"]}, 0.01).values()] == [1, 1]
    assert [len(v) for v in stratified_split({"a": [], "b": [], "c": []}, 0.99).values()] == [1, 2]
    with pytest.raises(ValueError, match=r"at least two"):
        stratified_split({"a": ["x"]}, 0.5)


def test_make_splits_writes_reads_back_and_refuses_to_overwrite(own: Path) -> None:
    """Mutations killed: files not matching the returned lists, the rarest class not deciding the
    stratum (the lone sprocket image would be a widget one), a seed not making it deterministic,
    an existing split silently replaced, --overwrite ignored."""
    splits = make_splits(own, 0.2, seed=0)
    main = own / "ImageSets" / "Main"
    for name in ("train", "val"):
        assert (main / f"{name}.txt").read_text().split() == splits[name]
    assert len(splits["val"]) == round(len(OBJECTS) * 0.2) == 6
    # Independent count: strata by rarest class are sprocket (1), gizmo (10), widget (20) -> 0, 2, 4.
    assert "s00" in splits["train"]
    assert Counter(i[0] for i in splits["val"]) == {"g": 2, "w": 4}
    with pytest.warns(UserWarning, match="no classes.txt"):
        train, val = read_voc(own, "train"), read_voc(own, "val")
    assert train.image_ids == splits["train"] and val.image_ids == splits["val"]
    assert train.classes == val.classes == ["gizmo", "sprocket", "widget"]  # inferred over the folder

    before = (main / "val.txt").read_text()
    with pytest.raises(DataError, match=r"ImageSets/Main/train\.txt: split file exists already; pass --overwrite"):
        make_splits(own, 0.3, seed=1)
    assert (main / "val.txt").read_text() == before
    assert make_splits(own, 0.2, seed=0, overwrite=True) == splits  # the same seed, the same split
    other = make_splits(own, 0.2, seed=1, overwrite=True)
    assert other != splits and (main / "val.txt").read_text().split() == other["val"]


def _cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = split_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["--val", "0.2"], r"nowhere: VOC folder not found"),
        ("empty", ["--val", "0.2"], r"Annotations: no annotation files"),
        ("own", ["--val", "0"], r"val fraction 0\.0: must lie strictly between 0 and 1"),
        ("own", ["--val", "1.5"], r"val fraction 1\.5: must lie strictly between 0 and 1"),
        ("own", ["--val", "nan"], r"val fraction nan"),
        ("broken", ["--val", "0.2"], r"g03\.xml: not valid XML"),
        ("split", ["--val", "0.2"], r"train\.txt: split file exists already"),
    ],
    ids=["missing-root", "no-annotations", "val-zero", "val-above-one", "val-nan", "broken-xml", "exists"],
)
def test_cli_bad_input_is_one_line_and_exit_1(tmp_path, capsys, setup, args, message) -> None:
    """Mutations killed: an error escaping as a traceback, exit 0 on a refusal, a message not
    naming the file, the broken XML skipped."""
    root = tmp_path / "nowhere"
    if setup == "empty":
        (root / "Annotations").mkdir(parents=True)
    elif setup:
        own_folder(root, OBJECTS)
    if setup == "broken":
        (root / "Annotations" / "g03.xml").write_text("<annotation><object>")
    if setup == "split":
        make_splits(root)
    before = sorted(p.name for p in (root / "ImageSets" / "Main").glob("*")) if root.exists() else None
    code, _, err = _cli(capsys, "--root", str(root), *args)
    assert code == 1 and len(err.strip().splitlines()) == 1 and re.search(message, err), err
    if setup in ("own", "broken", "split"):
        assert sorted(p.name for p in (root / "ImageSets" / "Main").glob("*")) == before


def test_cli_writes_and_overwrites_only_when_asked(own: Path, capsys) -> None:
    """Mutations killed: --overwrite not passed through, --seed/--val ignored."""
    code, out, _ = _cli(capsys, "--root", str(own), "--val", "0.5", "--seed", "3")
    assert code == 0 and "train.txt" in out
    assert (own / "ImageSets" / "Main" / "val.txt").read_text().split() == stratified_split(OBJECTS, 0.5, 3)["val"]
    assert _cli(capsys, "--root", str(own))[0] == 1
    code, _, _ = _cli(capsys, "--root", str(own), "--overwrite")
    assert code == 0
    assert (own / "ImageSets" / "Main" / "val.txt").read_text().split() == stratified_split(OBJECTS, 0.2, 0)["val"]


def test_the_module_runs_as_a_command(own: Path) -> None:
    """Mutation killed: no `if __name__ == "__main__"` (python -m would do nothing, exit 0)."""
    done = subprocess.run(
        [sys.executable, "-m", "detviz.data.split", "--root", str(own), "--val", "0.2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (own / "ImageSets" / "Main" / "train.txt").read_text().split() == make_splits(own, overwrite=True)["train"]


# --- the app ------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*no classes.txt:UserWarning")
def test_the_sidebar_opens_all_shows_the_note_and_makes_splits(data_root: Path) -> None:
    """Mutations killed: "all" not offered (the folder would not open), the class note not shown,
    the Make-splits button missing or writing nothing, the split list not refreshed after it."""
    folder = own_folder(data_root / "mine", OBJECTS)
    at = run_app("pages/overview.py", data="voc", voc=str(folder))
    split = at.selectbox(key=keys.SPLIT)
    assert list(split.options) == ["all"] and split.value == "all"
    notes = [i for i in texts(at.info) if "no classes.txt" in i]
    assert len(notes) == 1 and "gizmo, sprocket, widget" in notes[0]
    assert [m.value for m in at.metric if m.label == "Images"] == [f"{len(OBJECTS)}"]
    assert [m.value for m in at.metric if m.label == "Classes"] == ["3"]
    buttons = [b for b in at.button if b.label == "Make train/val splits"]
    assert len(buttons) == 1
    buttons[0].click().run()
    assert not at.exception
    main = folder / "ImageSets" / "Main"
    assert (main / "val.txt").read_text().split() == stratified_split(OBJECTS, 0.2, 0)["val"]
    assert list(at.selectbox(key=keys.SPLIT).options) == ["train", "val", "all"]
    assert not [b for b in at.button if b.label == "Make train/val splits"]  # splits exist now
