"""Colorizer service: grayscale photos and videos in, plausible colour out."""
