"""Training EnCodec: losses, discriminators, the loss balancer, data, the trainer and the ablation runner.

The model never imports this package; training imports the model.
"""
