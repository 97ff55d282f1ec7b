"""What every stage needs and nothing of ours below it: config (compose, check, schema), errors,
file I/O, the stage runner and the tracking store's check it makes, the preprocess outputs' readers,
label names, durations and the CPU's flags. Code one part owns lives in that part: an edit here
reruns every stage whose imports reach the file (dvc.yaml, `make deps`)."""
