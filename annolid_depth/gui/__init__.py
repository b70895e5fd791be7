"""The desktop app (Qt): open a video, set depth options, run, and browse the depth."""
