{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "genesys-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full resource name: release-chart, unless the release name already holds the chart name. */}}
{{- define "genesys-bridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "genesys-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "genesys-bridge.labels" -}}
helm.sh/chart: {{ include "genesys-bridge.chart" . }}
{{ include "genesys-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: genesys-bridge
{{- end }}

{{/* Selector labels: stable across upgrades, so never add anything versioned here. */}}
{{- define "genesys-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "genesys-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "genesys-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "genesys-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding BRIDGE_AMQP_URL and the state keys: the user's, or the chart-made one. */}}
{{- define "genesys-bridge.secretName" -}}
{{- if .Values.secret.existingSecret }}
{{- .Values.secret.existingSecret }}
{{- else }}
{{- include "genesys-bridge.fullname" . }}
{{- end }}
{{- end }}

{{- define "genesys-bridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* A ConfigMap value from a values entry: lists join with commas (the daemon's CSV settings). */}}
{{- define "genesys-bridge.configValue" -}}
{{- if kindIs "slice" . }}
{{- join "," . }}
{{- else if kindIs "float64" . }}
{{- /* JSON numbers arrive as float64; print 20 as "20", not "2e+01". */}}
{{- if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/* Labels of the helm test pod: the release's, but never the selector labels (the Service would route to it). */}}
{{- define "genesys-bridge.testLabels" -}}
helm.sh/chart: {{ include "genesys-bridge.chart" . }}
app.kubernetes.io/name: {{ include "genesys-bridge.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: genesys-bridge
{{- end }}
