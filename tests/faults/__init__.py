"""Fault-injection suite: a storm of runs on real worker, scheduler and Redis processes while
they are killed, paused and restarted (`python -m tests.faults.storm`, `make faults`)."""
