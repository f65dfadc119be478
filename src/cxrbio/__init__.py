"""cxrbio: candidate image biomarkers of lung disease in chest X-rays.

Reproduces Apostolopoulos et al. (2020) -- MobileNetV2 trained three ways under
10-fold cross-validation on seven classes -- and goes past it with radiomics, SHAP,
stability and shortcut audits. Stages talk through files in a run directory; see
``docs/architecture.md``.
"""

__version__ = "0.1.0"
