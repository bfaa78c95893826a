"""The engine: the YOLO facade (model.py), training (trainer.py, optim.py, amp.py, run_files.py, resume.py, ddp.py),
validation, prediction, export and their results. Import the modules directly, e.g. `ultralytics.engine.model`."""
