"""Wire schemas shared by Enexa and Amperio: standard library only, one definition each."""
