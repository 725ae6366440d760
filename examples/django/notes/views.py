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
    return render(request, "notes/index.html", {"form": form, "notes": Note.objects.all()[:200], "count": Note.objects.count()})


def notes_json(request):
    return JsonResponse({"notes": [{"id": n.id, "author": n.author, "body": n.body} for n in Note.objects.order_by("id")]})


def health(request):
    with connection.cursor() as c:
        c.execute("pragma walship_status")
        row = c.fetchone()
    return JsonResponse({"ok": True, "walship": row[0] if row else None})
