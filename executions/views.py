from django.http import HttpResponse


def editor(request):
    return HttpResponse("integr8s is up.")
