"""Download Pascal VOC with torchvision: `python -m detviz.data.download voc2007 --root data`.

Uses `torchvision.datasets.VOCDetection(download=True)`, which fetches the tar files from the
Oxford mirror, checks their MD5 and unpacks them to `<root>/VOCdevkit/VOC<year>`. Needs the
internet; offline it stops with one line saying so. The app and the tests never call it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# name -> (torchvision year, image sets to fetch)
DATASETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "voc2007": ("2007", ("trainval", "test")),
    "voc2012": ("2012", ("trainval",)),
}


def download_voc(name: str, root: str | Path) -> Path:
    """Downloads and unpacks a VOC year under `root`; returns the VOC folder.

    Raises:
        ValueError: unknown name. OSError / RuntimeError: the download or unpacking failed.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    from torchvision.datasets import VOCDetection

    year, image_sets = DATASETS[name]
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    for image_set in image_sets:
        VOCDetection(str(root), year=year, image_set=image_set, download=True)
    return root / "VOCdevkit" / f"VOC{year}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detviz.data.download", description="Download Pascal VOC through torchvision."
    )
    parser.add_argument("dataset", choices=sorted(DATASETS), help="which VOC release to fetch")
    parser.add_argument("--root", type=Path, default=Path("data"), help="folder to put VOCdevkit/ in (default: data)")
    args = parser.parse_args(argv)
    try:
        folder = download_voc(args.dataset, args.root)
    except (OSError, RuntimeError) as e:  # urllib's URLError is an OSError
        reason = getattr(e, "reason", None) or e
        print(
            f"error: could not download {args.dataset} into {args.root} ({reason}); "
            "check the internet connection and try again.",
            file=sys.stderr,
        )
        return 1
    print(f"{args.dataset} ready in {folder}; open it in the app as a VOC folder, or use --data voc:{folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
