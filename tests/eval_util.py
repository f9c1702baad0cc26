"""A small eval data folder in ../shared/data's layout for the evaluate tests: a few real MMLU subjects (building
every item of all 57 costs seconds per setting), and the real GSM8K files."""
import os
import pathlib

MMLU_SUBJECTS = ("abstract_algebra", "anatomy", "college_computer_science", "college_mathematics",
                 "college_physics", "electrical_engineering")  # the last four hold the 10 "None" option cells


def mini_data_dir(shared_data: pathlib.Path, dest: pathlib.Path, subjects=MMLU_SUBJECTS) -> str:
    for split in ("dev", "test"):
        (dest / "mmlu" / split).mkdir(parents=True, exist_ok=True)
        for s in subjects:
            link = dest / "mmlu" / split / f"{s}_{split}.csv"
            if not link.exists():
                os.symlink(shared_data / "mmlu" / split / f"{s}_{split}.csv", link)
    if not (dest / "gsm8k").exists():
        os.symlink(shared_data / "gsm8k", dest / "gsm8k")
    return str(dest)
