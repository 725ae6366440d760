import json

from django import forms
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render

from .models import Note


class NoteForm(forms.ModelForm):
    class Meta:
        model = Note
        fields = ["author", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 3})}


def index(request):
    if request.method == "POST":
        form = NoteForm(request.POST)
        if form.is_valid():
            form.save()
            return redirect("index")
    else:
        form = NoteForm()
    context = {"form": form, "notes": Note.objects.all()[:200], "count": Note.objects.count(), "walship": walship_status()}
    return render(request, "notes/index.html", context)


def walship_status():
    """walship's status of the database (a dict), or None when it does not replicate."""
    with connection.cursor() as c:
        c.execute("pragma walship_status")
        row = c.fetchone()
    if not row or not row[0] or not row[0].startswith("{"):
        return None
    status = json.loads(row[0])
    status["replica"] = status.get("replica", "").split("?")[0]  # without endpoint and options
    return status


def notes_json(request):
    return JsonResponse({"notes": [{"id": n.id, "author": n.author, "body": n.body} for n in Note.objects.order_by("id")]})


def health(request):
    return JsonResponse({"ok": True, "walship": walship_status()})
