import hashlib
import secrets
import unicodedata
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import models as auth_models
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.validators import ASCIIUsernameValidator
from django.db import models
from django.utils import timezone


def fold(username: str) -> str:
    """What makes two user names the same name: NFKC (full-width "ＲＴ" is "RT") and case
    folded ("RTadmin" is "rtadmin"), as Unicode's identifier caseless matching does. Python
    decides, not the database: SQLite's lower() knows only ASCII."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


# Latin letters only (after NFKC, so full-width "ＲＴ" is "RT"): Cyrillic "а" and Latin "a" look
# the same, fold to different names, and would let "аdmin" pass for "admin".
LATIN_USERNAME = ASCIIUsernameValidator()


class UserManager(auth_models.UserManager["User"]):
    def get_by_natural_key(self, username: str | None) -> "User":
        """Sign-in finds a name however it is written: "Alice", "ａｌｉｃｅ" and "alice" are
        one account (sign-up never lets them be two)."""
        return self.get(username_key=fold(username or ""))


class User(AbstractUser):
    """The project's own user model, so fields can be added later without a data migration."""

    # The one rule for "that name is taken": unique, filled from username by save().
    # Up to 600: folding may lengthen a name ("ß" is "ss").
    username_key = models.CharField(max_length=600, unique=True, editable=False)
    username = models.CharField(
        "username",
        max_length=150,
        unique=True,
        help_text="Required. 150 characters or fewer. Latin letters, digits and @/./+/-/_ only.",
        validators=[LATIN_USERNAME],
        error_messages={"unique": "A user with that username already exists."},
    )
    _made_unusable = False  # set_unusable_password() was called since the last save

    objects = UserManager()  # type: ignore[misc]  # AbstractUser declares the plain one

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"

    def save(self, **kwargs: Any) -> None:
        # Normalised first, so whatever is stored is what was checked (create_user does so
        # too; the admin's forms and save() on a loaded user may not).
        self.username = self.normalize_username(self.username)
        self.username_key = fold(self.username)
        fields = kwargs.get("update_fields")
        if fields is not None and "username" in fields:
            kwargs["update_fields"] = {*fields, "username_key"}
        # set_password() leaves the new password in _password until save(); a hash upgrade at
        # sign-in clears it first, so only a real change ends the user's credentials.
        changed = not self._state.adding and (
            getattr(self, "_password", None) is not None or self._made_unusable
        )
        super().save(**kwargs)
        if changed:
            self.end_credentials()
            self._made_unusable = False

    def set_unusable_password(self) -> None:
        super().set_unusable_password()
        self._made_unusable = True

    def end_credentials(self) -> None:
        """A new password ends what the old one opened: every refresh token is blacklisted,
        every API key deleted. Access tokens carry a digest of the password hash and sessions
        its HMAC (Django's session auth hash), so both stop working on their next use; the
        page that changed the password keeps its own session (update_session_auth_hash)."""
        from rest_framework_simplejwt.token_blacklist.models import (
            BlacklistedToken,
            OutstandingToken,
        )

        live = OutstandingToken.objects.filter(user=self, blacklistedtoken__isnull=True)
        BlacklistedToken.objects.bulk_create(
            [BlacklistedToken(token=token) for token in live], ignore_conflicts=True
        )
        self.api_keys.all().delete()


API_KEY_PREFIX = "i8s_"
API_KEY_TOUCH_S = 60  # last_used_at is written at most once a minute per key


def digest(key: str) -> str:
    """Keys are 256 random bits: a plain SHA-256 is as good as a slow hash against guessing,
    and lets a request find its key with one indexed lookup."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKey(models.Model):
    """A long-lived key for programs: `Authorization: Api-Key <key>` (or `Token <key>`).
    Stored as a digest; the key itself is shown once, when it is made."""

    key_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="What the key is for, to tell keys apart.")
    prefix = models.CharField(max_length=16, help_text="The key's first characters, to spot it.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user: User, name: str) -> tuple["ApiKey", str]:
        """Make a key for user; returns the row and the key, which is never seen again."""
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        return cls.objects.create(user=user, name=name, prefix=key[:12], digest=digest(key)), key

    @classmethod
    def room_problem(cls, user: User) -> str | None:
        """Why user may not make another key now (MAX_API_KEYS), in words; None if they may."""
        held = cls.objects.filter(user=user).count()
        if held >= settings.MAX_API_KEYS:
            return (
                f"You have {held} API keys, as many as an account keeps. Revoke one you no "
                "longer use first."
            )
        return None

    @classmethod
    def find(cls, key: str) -> "ApiKey | None":
        """The live key of an active user with this value, marked as used; else None."""
        found = cls.objects.select_related("user").filter(digest=digest(key)).first()
        if found is None or not found.user.is_active:
            return None
        now = timezone.now()
        if found.last_used_at is None or now - found.last_used_at > timedelta(
            seconds=API_KEY_TOUCH_S
        ):
            cls.objects.filter(pk=found.pk).update(last_used_at=now)
            found.last_used_at = now
        return found
