"""Suite-wide settings: the machine-wide G_real cache is off unless a test turns it on, so a build in one
test never reuses a generator another test trained (the cache tests point it at their own folder)."""
import os

os.environ["SWIFTAVATAR_GAN_CACHE"] = "off"
