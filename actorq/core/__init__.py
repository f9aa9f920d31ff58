"""The decision core: the job model, the Dispatcher's events and state, and its decisions.

Pure: no threads, no pykka, no clock reads. The time and the random
generator are arguments; decisions come back as data (events to persist,
effects to run), so the same core is driven by the Dispatcher actor, by a
caller's thread, and by a simulation on one thread in virtual time.
"""
