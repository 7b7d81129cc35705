from rest_framework import serializers

from .models import Brand, BrandMembership


class BrandSerializer(serializers.ModelSerializer):
    class Meta:
        model = Brand
        fields = ["id", "slug", "name"]


class MembershipBrandSerializer(serializers.ModelSerializer):
    brand = BrandSerializer()

    class Meta:
        model = BrandMembership
        fields = ["brand", "role"]


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    brand = BrandSerializer()
    role = serializers.CharField()
    memberships = MembershipBrandSerializer(many=True)
