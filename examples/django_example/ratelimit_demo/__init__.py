"""A minimal Django project rate-limited by rust_py_rate_limit."""
