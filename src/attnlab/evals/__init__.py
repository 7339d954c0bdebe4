"""Multiple-choice evaluation on real tasks: tasks, log-likelihood scoring, bootstrap
confidence intervals, paired steered-vs-baseline comparison, and greedy head search."""
