"""The paper's human study (acceptability + 5-way preference) as a web app, its records, and its statistics."""
