"""Playwright journeys in headless Chromium."""
