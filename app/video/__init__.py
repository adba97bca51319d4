"""Videos: colourised frame by frame through the image model, with sound, frame rate and rotation kept."""
