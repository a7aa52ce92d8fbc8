import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from django.core.asgi import get_asgi_application  # noqa: E402 - after setup, like Django's own

from config import telemetry  # noqa: E402
from config.startup import verify_startup  # noqa: E402

verify_startup()
# Before the handler loads MIDDLEWARE: the instrumentation inserts its middleware there.
telemetry.configure(role="web")
application = get_asgi_application()
