"""Tasks of the plugin; registered by :func:`addrop_fairseq.register`."""
