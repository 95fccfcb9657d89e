"""What happened after a decision: outcomes, holdout groups and the numbers reported on them."""
