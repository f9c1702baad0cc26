"""One HTML page over evaluation folders and the human study: the paper's table, its charts, the study's figures."""
