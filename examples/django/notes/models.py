from django.db import models


class Note(models.Model):
    author = models.CharField(max_length=80)
    body = models.TextField(max_length=2000)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self):
        return f"{self.author}: {self.body[:40]}"
