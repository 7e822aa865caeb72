import OffsiteCore

print("offsite")
