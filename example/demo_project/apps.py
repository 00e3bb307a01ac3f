from django.apps import AppConfig


class DemoProjectConfig(AppConfig):
    name = "demo_project"
    verbose_name = "aa-stripe-graphql demo"
