"""Function views, one module per page area; errors.py renders every error page."""
