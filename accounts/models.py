from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """The project's own user model, so fields can be added later without a data migration."""

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
