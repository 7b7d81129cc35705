from django.contrib import admin

from .models import Brand, BrandMembership


class BrandMembershipInline(admin.TabularInline):
    model = BrandMembership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["slug", "name"]
    inlines = [BrandMembershipInline]


@admin.register(BrandMembership)
class BrandMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "brand", "role", "created_at"]
    list_filter = ["role", "brand"]
    search_fields = ["user__username", "brand__slug", "brand__name"]
    autocomplete_fields = ["user", "brand"]
