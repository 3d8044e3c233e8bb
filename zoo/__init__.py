"""The encoders shipped with lever-transfer: ``index.yaml`` and one package folder per name.

Found through ``importlib.resources`` (``lever_transfer.shipped_zoo``), so they load from an installed
wheel as well as from the checkout.
"""
