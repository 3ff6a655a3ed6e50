/* codes.c — the closed code lists a grant may use, and name/id syntax.
 *
 * Scopes are FHIR R4 resource types that carry clinical or research data,
 * a few coarse categories, and "dataset:<64 hex>" naming a data set by its
 * SHA-256. Purposes are HL7 v3 ActReason PurposeOfUse codes and GA4GH Data
 * Use Ontology (DUO) terms. The lists are explicit on purpose: a code that is
 * not here cannot reach the chain, so every node and gateway agrees on the
 * vocabulary. Matching is literal: a grant of "laboratory" covers a request
 * for "laboratory", not for "Observation"; there is deliberately no "all"
 * wildcard, so every grant names what it releases (minimum necessary).
 */
#include <string.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"

static const char *const scopes[] = {
    /* FHIR R4 resource types */
    "AllergyIntolerance", "CarePlan", "CareTeam", "ClinicalImpression", "Condition",
    "DetectedIssue", "DiagnosticReport", "DocumentReference", "Encounter",
    "EpisodeOfCare", "FamilyMemberHistory", "Goal", "ImagingStudy", "Immunization",
    "Media", "MedicationAdministration", "MedicationDispense", "MedicationRequest",
    "MedicationStatement", "MolecularSequence", "NutritionOrder", "Observation",
    "Patient", "Procedure", "QuestionnaireResponse", "ResearchSubject",
    "RiskAssessment", "ServiceRequest", "Specimen",
    /* categories */
    "laboratory", "imaging", "genomic", "vital-signs", "social-history",
    "mental-health", "substance-use", "sexual-health", "reproductive-health",
    "hiv", "demographics",
};

static const char *const purposes[] = {
    /* HL7 v3 ActReason, PurposeOfUse */
    "TREAT", "ETREAT", "CAREMGT", "BTG", "POPHLTH", "PUBHLTH", "DISASTER", "THREAT",
    "HRESCH", "BIORCH", "CLINTRCH", "CLINTRL", "DSRCH", "POARCH", "TRANSRCH",
    "HPAYMT", "CLMATTCH", "COVAUTH", "COVERAGE", "ELIGDTRM", "ELIGVER", "ENROLLM",
    "REMITADV", "HOPERAT", "HMARKT", "HACCRED", "HCOMPL", "HLEGAL", "HQUALIMP",
    "HSYSADMIN", "MEMADMIN", "PATADMIN", "PATSFTY", "PERFMSR", "RECORDMGT", "TRAIN",
    "HDIRECT", "PATRQT", "FAMRQT", "PWATRNY", "SUPNWK", "COC", "DONAT", "FRAUD",
    "GOV", "HPRGRP", "HTEST", "SYSDEV",
    /* GA4GH DUO: primary permitted uses */
    "DUO:0000004", /* NRES no restriction */
    "DUO:0000042", /* GRU general research use */
    "DUO:0000006", /* HMB health or medical or biomedical research */
    "DUO:0000007", /* DS disease specific research */
    "DUO:0000011", /* POA population origins or ancestry research only */
    "DUO:0000043", /* CC clinical care use */
    /* GA4GH DUO: modifiers */
    "DUO:0000012", /* RS research specific restrictions */
    "DUO:0000015", /* NMDS no general methods research */
    "DUO:0000016", /* GSO genetic studies only */
    "DUO:0000018", /* NPUNCU not-for-profit, non-commercial use only */
    "DUO:0000019", /* PUB publication required */
    "DUO:0000020", /* COL collaboration required */
    "DUO:0000021", /* IRB ethics approval required */
    "DUO:0000022", /* GS geographical restriction */
    "DUO:0000024", /* MOR publication moratorium */
    "DUO:0000025", /* TS time limit on use */
    "DUO:0000026", /* US user specific restriction */
    "DUO:0000027", /* PS project specific restriction */
    "DUO:0000028", /* IS institution specific restriction */
    "DUO:0000029", /* RTN return to database or resource */
    "DUO:0000044", /* NPOA population origins or ancestry research prohibited */
    "DUO:0000045", /* NPU not-for-profit use only */
    "DUO:0000046", /* NCU non-commercial use only */
};

static int in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, list[i]) == 0) return 1;
    }
    return 0;
}

/* "dataset:" followed by exactly 64 lower-case hex digits (one spelling per
 * hash, so two grants of the same data set always compare equal). */
static int dataset_scope_valid(const char *s)
{
    static const char prefix[] = "dataset:";
    const size_t plen = sizeof prefix - 1;
    if (strncmp(s, prefix, plen) != 0) return 0;
    s += plen;
    size_t i = 0;
    for (; i < 2 * CHAIN_HASH_LEN; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return 0;
    }
    return s[i] == '\0';
}

int chain_scope_valid(const char *scope)
{
    if (scope == NULL) return 0;
    if (strnlen(scope, CHAIN_CODE_LEN_MAX + 1) > CHAIN_CODE_LEN_MAX) return 0;
    if (in_list(scope, scopes, sizeof scopes / sizeof scopes[0])) return 1;
    return dataset_scope_valid(scope);
}

int chain_purpose_valid(const char *purpose)
{
    if (purpose == NULL) return 0;
    if (strnlen(purpose, CHAIN_CODE_LEN_MAX + 1) > CHAIN_CODE_LEN_MAX) return 0;
    return in_list(purpose, purposes, sizeof purposes / sizeof purposes[0]);
}

int chain__id_valid(const char *s)
{
    size_t n = strnlen(s, CHAIN_ID_LEN_MAX + 1);
    if (n == 0 || n > CHAIN_ID_LEN_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return 0;
    }
    return 1;
}

int chain__name_valid(const char *s)
{
    size_t n = strnlen(s, CHAIN_NAME_LEN_MAX + 1);
    if (n == 0 || n > CHAIN_NAME_LEN_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e) return 0;
    }
    return 1;
}

static const struct { const char *name; uint32_t bit; } roles[] = {
    {"validator", CHAIN_ROLE_VALIDATOR},
    {"gateway", CHAIN_ROLE_GATEWAY},
    {"grantee", CHAIN_ROLE_GRANTEE},
};

uint32_t chain__role_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        if (strcmp(name, roles[i].name) == 0) return roles[i].bit;
    }
    return 0;
}

const char *chain__role_name(uint32_t role_bit)
{
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        if (roles[i].bit == role_bit) return roles[i].name;
    }
    return NULL;
}
