"""The setup doctor: ``checks`` (a real configuration against Redis and every upstream),
``fields`` (``create-fields``: the customer custom fields the service writes) and
``redaction`` (what a line may show)."""
