"""HTML pages people read (the error report; the monitoring report): Jinja2 templates with
autoescaping, inline CSS and images, no scripts, no network."""
