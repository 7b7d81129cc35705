import django_filters

from .models import Provider, ProviderCredential


class CredentialFilter(django_filters.FilterSet):
    provider = django_filters.ChoiceFilter(
        field_name="provider__code", choices=Provider.Code.choices
    )
    is_active = django_filters.BooleanFilter()

    class Meta:
        model = ProviderCredential
        fields = ["provider", "is_active"]
