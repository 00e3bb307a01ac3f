import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A custom user model; the library must follow it through STRIPE_USER_MODEL."""

    uuid = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)


class Order(models.Model):
    """Something a charge pays for; its key is a UUID, like many projects' models."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=100)
