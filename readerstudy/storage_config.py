"""The ``STORAGES["default"]`` entry for each storage backend (settings build it from the environment; the storage
tests build the same from the S3 server they start)."""

from __future__ import annotations


def s3_storage(
    *,
    bucket: str,
    endpoint_url: str = "",
    region: str = "",
    prefix: str = "",
    access_key: str = "",
    secret_key: str = "",
) -> dict:
    """django-storages' S3Storage for any S3-protocol store (AWS, MinIO, Ceph, a hospital's appliance)."""
    if not bucket:
        raise RuntimeError("STORAGE_BACKEND=s3 needs S3_BUCKET (and S3_ENDPOINT_URL for a store other than AWS)")
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url or None,
            "region_name": region or None,
            "location": prefix,
            # Empty: boto3's own credential chain (environment, instance role, ...).
            "access_key": access_key or None,
            "secret_key": secret_key or None,
            "file_overwrite": False,  # Django's contract: a taken name gets a new one, nothing is overwritten
            "default_acl": None,  # private: images are served through the app, which checks who may see them
            "querystring_auth": True,
        },
    }


FILESYSTEM_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage"}  # under MEDIA_ROOT
STATICFILES_STORAGE = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
