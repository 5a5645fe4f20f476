"""The Pascal VOC devkit's evaluation, written its way: a Python loop per class and per
detection over numpy arrays, IoU with the devkit's "+1" on 1-based pixel boxes. The reference
`detviz.evaluate.voc_map` is checked and timed against."""

from __future__ import annotations

import numpy as np


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool) -> float:
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0.0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_eval_devkit(detections, ground_truths, num_classes, ovthresh=0.5, use_07_metric=True, use_difficult=False):
    """Per-class APs (nan for a class without ground truth), as the devkit's voc_eval.

    detections: per image (boxes, scores, labels); ground_truths: per image (boxes, labels,
    difficult); boxes in DESIGN's pixel convention, turned back into VOC's 1-based ones here.
    Ties in score keep their input order (a stable sort; the devkit's quicksort is not).
    """
    aps = []
    for c in range(num_classes):
        class_recs, npos = {}, 0
        for i, (boxes, labels, difficult) in enumerate(ground_truths):
            mine = np.asarray(labels) == c
            bbox = np.asarray(boxes, dtype=np.float64)[mine].reshape(-1, 4)
            bbox = np.stack([bbox[:, 0] + 1, bbox[:, 1] + 1, bbox[:, 2], bbox[:, 3]], 1)  # to 1-based inclusive
            diff = np.asarray(difficult, dtype=bool)[mine]
            if use_difficult:
                diff = np.zeros_like(diff)
            npos += int(np.sum(~diff))
            class_recs[i] = {"bbox": bbox, "difficult": diff, "det": [False] * len(diff)}
        image_ids, confidence, bb = [], [], []
        for i, (boxes, scores, labels) in enumerate(detections):
            for box, score, label in zip(
                np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores), np.asarray(labels), strict=True
            ):
                if label == c:
                    image_ids.append(i)
                    confidence.append(float(score))
                    bb.append([box[0] + 1, box[1] + 1, box[2], box[3]])
        if npos == 0:
            aps.append(float("nan"))
            continue
        confidence = np.array(confidence)
        bb = np.array(bb).reshape(-1, 4)
        sorted_ind = np.argsort(-confidence, kind="stable")
        bb = bb[sorted_ind, :]
        image_ids = [image_ids[x] for x in sorted_ind]
        nd = len(image_ids)
        tp, fp = np.zeros(nd), np.zeros(nd)
        for d in range(nd):
            r = class_recs[image_ids[d]]
            box = bb[d, :].astype(float)
            ovmax = -np.inf
            bbgt = r["bbox"].astype(float)
            if bbgt.size > 0:
                ixmin = np.maximum(bbgt[:, 0], box[0])
                iymin = np.maximum(bbgt[:, 1], box[1])
                ixmax = np.minimum(bbgt[:, 2], box[2])
                iymax = np.minimum(bbgt[:, 3], box[3])
                iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
                ih = np.maximum(iymax - iymin + 1.0, 0.0)
                inters = iw * ih
                uni = (
                    (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
                    + (bbgt[:, 2] - bbgt[:, 0] + 1.0) * (bbgt[:, 3] - bbgt[:, 1] + 1.0)
                    - inters
                )
                overlaps = inters / uni
                ovmax = np.max(overlaps)
                jmax = np.argmax(overlaps)
            if ovmax > ovthresh:
                if not r["difficult"][jmax]:
                    if not r["det"][jmax]:
                        tp[d] = 1.0
                        r["det"][jmax] = 1
                    else:
                        fp[d] = 1.0
            else:
                fp[d] = 1.0
        fp, tp = np.cumsum(fp), np.cumsum(tp)
        rec = tp / float(npos)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps.append(voc_ap(rec, prec, use_07_metric))
    return np.array(aps)
