"""Evaluation: AP/mAP as the published validator computes it, the confusion matrix, COCO scoring, metric plots."""
