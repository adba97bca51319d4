"""Training package for the Colorizer model: data, model, training, evaluation, ONNX export.

The service (`app/`) never imports this package; it only loads the ONNX file exported here.
"""
