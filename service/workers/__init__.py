"""Runs engine jobs off the event loop: one worker thread per device, a bounded queue each."""
