"""Small programs the suite starts as subprocesses: publishers and a raw consumer."""
