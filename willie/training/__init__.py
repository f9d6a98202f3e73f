"""Training plumbing shared by the three models: the loop (`engine`: devices, DDP, AMP,
accumulation, EMA, schedules, SIGTERM/Ctrl-C, resume) and its files (`checkpoint`: atomic
checkpoints, published safetensors artifacts, model cards)."""
