"""The speed of training: ``python -m stn bench`` (:mod:`stn.bench.cli`).

The levers it compares (:mod:`~stn.bench.levers`), steps/s and the projected device-hours
(:mod:`~stn.bench.throughput`), profiles (:mod:`~stn.bench.profiling`), conv + max-pool pair
timings (:mod:`~stn.bench.blocks`) and concurrent runs on one device (:mod:`~stn.bench.concurrency`).
"""
