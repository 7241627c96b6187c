"""What runs: the services' tasks. Each module's tasks go to the queue of its name."""
