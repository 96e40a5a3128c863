"""Browser tests: the UI fixture in headless Chromium against a real gateway."""
