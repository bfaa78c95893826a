"""The YOLOv8 detection algorithm: anchors, box overlaps, the task-aligned assigner and the loss."""
