"""Our job queue: a thin layer over Redis Streams (consumer groups, heartbeats, reaper, dead letters).

``keys`` names every Redis key, ``jobs`` the job records, ``producer`` is the gateway's async side
(enqueue, wait for results, tail token streams) and ``consumer`` the worker's side (read batches,
ack, heartbeat, reap jobs of dead workers).
"""
