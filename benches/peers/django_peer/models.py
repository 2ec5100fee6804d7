from django.contrib.auth.models import AbstractUser
from django.db import models
from django_scim.models import AbstractSCIMGroupMixin, AbstractSCIMUserMixin


class Group(AbstractSCIMGroupMixin):
    name = models.CharField(max_length=150, unique=True)


class User(AbstractSCIMUserMixin, AbstractUser):
    # What django-scim2's adapters read: user.scim_groups and group.user_set.
    scim_groups = models.ManyToManyField(Group, related_name="user_set", blank=True)
